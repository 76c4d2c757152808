"""The cost-aware planner: which resource type and machine runs each job, within a deadline or a
budget (`frugalml plan`), and the work a stage needs, measured here (`frugalml profile`)."""
