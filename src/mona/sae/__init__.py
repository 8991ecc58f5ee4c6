"""SAE layer: load sparse autoencoders (sparsify and SAELens layouts), encode with them, collect activations and
train a TopK SAE."""
