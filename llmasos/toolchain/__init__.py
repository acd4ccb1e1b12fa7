"""Tools around the models: fine-tuning, evaluation, training data and the model library."""
