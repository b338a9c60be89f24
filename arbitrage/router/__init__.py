"""Router input formatting, dataset building, training and evaluation."""
