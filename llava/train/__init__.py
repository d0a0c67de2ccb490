"""Training: dataset registry, samples and collator, the trainer entry (`train`), LoRA merge (`merge_lora`)."""
