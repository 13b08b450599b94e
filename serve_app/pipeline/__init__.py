"""The generation pipeline: background removal → shape → texture → export, usable without Ray."""
