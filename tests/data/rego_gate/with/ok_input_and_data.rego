package gate

inner if {
	input.x == 1
	data.cfg.enabled
}

allow if inner with input as {"x": 1} with data.cfg.enabled as true
