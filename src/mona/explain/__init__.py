"""Why a sample was chosen: latent labels and per-sample explanations."""
