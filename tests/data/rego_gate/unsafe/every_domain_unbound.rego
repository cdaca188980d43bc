package gate

allow if {
	every c in containers {
		c.image != ""
	}
}
