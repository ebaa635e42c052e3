"""Video files: the encoder and its formats, saved clips and the VIDEO object, joining clips, the manifest."""
