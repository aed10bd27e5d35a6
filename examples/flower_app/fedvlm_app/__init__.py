"""The server side of a fedvlm federation on Flower 1.42."""
