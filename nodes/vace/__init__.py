"""The vace room: colour matching of clips (``colour``) and the VACE joiner: frame accounting (``layout``),
the splice (``splice``), the two node steps (``joiner``) and transitions in the run ledger (``transitions``)."""
