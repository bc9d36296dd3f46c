"""The image worker: takes jobs off the queue, processes the image, stores the result."""
