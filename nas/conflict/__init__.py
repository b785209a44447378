"""The gradient-conflict search: train `share-all` briefly, measure each shared sublayer's image/text
gradient cosine, make the most conflicting sublayers modality-specific within the budget (Recon's
rule); the same cosines rank policies as a proxy."""
