"""The columns and names the figures and the interactive map share (no plotting library here)."""

#: The accuracy every figure and the interactive map colour by.
ACCURACY = "test_accuracy"
#: The map's coordinates in an embedding table.
PHATE_AXES = ("phate_1", "phate_2")
#: Numeric columns with at most this many distinct values (hyperparameters such as depth or a
#: grid of learning rates) get one colour per value and a legend instead of a colourbar.
MAX_LEVELS = 8
#: How the baseline distances are named in the statistics and the figures.
BASELINE_NAMES = {"cka": "CKA distance", "rsa": "RSA distance", "procrustes": "Procrustes distance"}
#: Columns a network from elsewhere brings with its metadata file are named "meta:<key>": the
#: interactive map colours by them and the statistics take them with the hyperparameters.
METADATA_PREFIX = "meta:"
