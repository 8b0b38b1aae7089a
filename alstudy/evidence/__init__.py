"""Evidence: paired statistics, the claim registry, verdict records."""
