"""runimage: a portable, single-file, unprivileged Linux container."""
