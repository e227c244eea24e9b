"""Training: state, step, optimizer, compiled programs and the host loop."""
