# module: gate.rego
package gate

users := {"alice"}
# module: users.rego
package gate.users

admins := {"bob"}
