"""Running the image, the server and the toolkit on this machine, and the data tests feed them."""
