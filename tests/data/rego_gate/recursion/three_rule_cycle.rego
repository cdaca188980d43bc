package gate

a if b

b if c

c if {
	input.x
	a
}
