"""Training: the loop, batches, schedules, auxiliary losses, LoRA, states, checkpoints."""
