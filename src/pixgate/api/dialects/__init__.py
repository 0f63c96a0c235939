"""Wire formats. Each dialect parses its requests into a GenerationRequest and renders
results and errors in its own shape; nothing else."""
