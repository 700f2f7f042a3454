"""What the public calls do beyond storing and reading rows: transcripts and titles."""
