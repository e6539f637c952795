"""The vace room: colour matching of clips (``colour``) and, to come, VACE transition prep and splicing."""
