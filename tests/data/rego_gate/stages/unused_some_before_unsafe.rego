package gate

a if {
	some i
	true
}

b := x if true
