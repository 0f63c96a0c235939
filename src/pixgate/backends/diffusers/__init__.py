"""The diffusion engine. Importing this package does not import torch: API-only nodes
never load it; workers import the submodules lazily."""
