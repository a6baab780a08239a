"""Robot profiles (``<robot>.yaml``) and their URDFs, shipped as package data."""
