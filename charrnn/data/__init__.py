"""Text in, integer ids out: vocabulary, corpora, text files, batches and splits."""
