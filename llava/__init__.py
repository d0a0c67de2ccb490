"""ViLAMP: video-language model with differential keyframe selection and feature merging.

Importing `llava` registers `llava_qwen` with transformers' `AutoConfig`, `AutoModelForCausalLM` and
`AutoProcessor`.
"""

import llava.model  # noqa: F401
