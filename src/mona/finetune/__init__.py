"""Fine-tune the selection model on selected data (LoRA) and evaluate it on held-out rows."""
