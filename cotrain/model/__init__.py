"""Model adapters: family facts, tiny random models, the offline processor and the loader."""
