"""What an experiment takes from its source: claims, documents, questions, statements."""
