"""Revision scripts, oldest first: ``NNNN_<message>.py``, each revising the one before."""
