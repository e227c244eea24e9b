"""What can be done with a finished run's directory: evaluate it again."""
