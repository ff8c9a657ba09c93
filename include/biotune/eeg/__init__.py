"""EEG family: Muse EEG (Mind Monitor CSV) to a primary dataset, a Mamba-2 backbone in plain
PyTorch, masked pretraining, checkpoint discovery and supervised fine-tuning."""
