"""Token ids and strings shared by the model, the prompts and the data pipeline."""

IMAGE_TOKEN_INDEX = -200  # placeholder id for "<image>" in input_ids (released value)
IGNORE_INDEX = -100  # label id that the loss ignores
DEFAULT_IMAGE_TOKEN = "<image>"
