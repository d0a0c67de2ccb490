"""ViLAMP: video-language model with differential keyframe selection and feature merging.

Importing `llava` registers `llava_qwen` with transformers' `AutoConfig`, `AutoModelForCausalLM` and
`AutoProcessor`.
"""

__version__ = "0.1.0"  # the project version (pyproject.toml reads it from here)

import llava.model  # noqa: F401
