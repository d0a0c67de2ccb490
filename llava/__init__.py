"""ViLAMP: video-language model with differential keyframe selection and feature merging."""
