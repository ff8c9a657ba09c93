"""Glucose family: CGM patterns -> chat JSONL coaching examples -> a LoRA-tuned or provider-tuned LM."""
