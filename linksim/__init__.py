"""linksim: an end-to-end wireless link simulator for semantic image communication.

Built on NVIDIA Sionna (TensorFlow line). See ``docs/`` for the user guide, the
scenario reference and the signal conventions.
"""

__version__ = "0.1.0"
