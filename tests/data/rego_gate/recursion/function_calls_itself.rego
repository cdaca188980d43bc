package gate

f(x) := y if {
	y := f(x)
}
