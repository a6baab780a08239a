"""pupper_ros: an on-robot runtime for learned Pupper walking policies, and the contract it shares with training."""

__version__ = "0.1.0"
