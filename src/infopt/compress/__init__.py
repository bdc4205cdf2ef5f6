"""Compression stages, one entry point each: `infopt.compress.quantize.quantize`, `infopt.compress.prune.prune`,
`infopt.compress.distill.distill`. Import the stage you use; this package imports none of them."""
