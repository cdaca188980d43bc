package gate

allow if {
	regex.match(`^[a-z0-9-]+$`, input.name)
	glob.match("*.acme.io", ["."], input.host)
	net.cidr_contains("10.0.0.0/8", input.ip)
	time.parse_rfc3339_ns(input.expires) > time.now_ns()
}
