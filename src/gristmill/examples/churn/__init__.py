"""The churn example: users, transactions, clickstream events and churn labels."""
