"""Examples of rdvae used from outside the package (a user's own modules)."""
