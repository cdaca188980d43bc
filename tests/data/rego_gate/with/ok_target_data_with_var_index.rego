package gate

inner if data.cfg.x == 1

allow if {
	some k in ["x"]
	inner with data.cfg[k] as 1
}
