"""Stable Video Infinity: SVI LoRAs (loras.py reads them) and latent continuation across scenes."""
