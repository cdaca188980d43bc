package gate

even(n) if {
	n > 0
	odd(n - 1)
}

odd(n) if {
	n > 0
	even(n - 1)
}
