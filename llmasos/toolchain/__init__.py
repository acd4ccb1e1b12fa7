"""Tools around the models: fine-tuning, evaluation and the model library."""
