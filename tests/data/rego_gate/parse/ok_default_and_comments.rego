# a comment before the package
package gate

# METADATA
# title: the decision
default allow := false # trailing comment

allow if input.user == "alice"
