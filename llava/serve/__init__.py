"""ViLAMP behind an OpenAI-compatible HTTP API, with a web page: `python -m llava.serve --model PATH`."""
