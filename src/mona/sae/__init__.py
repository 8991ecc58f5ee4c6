"""SAE layer: load sparse autoencoders of every public family into one canonical description (spec.py,
formats.py, release.py), encode with each architecture (encoders.py), collect activations and train a TopK SAE."""
