package gate

allow if {
	concat(",", ["a", "b"], out)
	out == "a,b"
}
