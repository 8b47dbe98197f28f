namespace Tandem.Kernel.Tests
{
    /// <summary>What a running test reports through: the first Fail or Skip wins.</summary>
    public sealed class TestContext
    {
        public string? FailReason;
        public string? SkipReason;
        public ulong FailValue;
        public bool HasFailValue;

        public void Fail(string reason)
        {
            if (FailReason == null && SkipReason == null)
                FailReason = reason;
        }

        public void Fail(string reason, ulong value)
        {
            if (FailReason == null && SkipReason == null)
            {
                FailReason = reason;
                FailValue = value;
                HasFailValue = true;
            }
        }

        public void Skip(string reason)
        {
            if (FailReason == null && SkipReason == null)
                SkipReason = reason;
        }

        /// <summary>Like <see cref="Check(bool, string)"/>, printing <paramref name="value"/> with the reason on failure.</summary>
        public bool Check(bool condition, string reason, ulong value)
        {
            if (!condition)
                Fail(reason, value);
            return condition;
        }

        public bool Check(bool condition, string reason)
        {
            if (!condition)
                Fail(reason);
            return condition;
        }

        public void Reset()
        {
            FailReason = null;
            SkipReason = null;
            HasFailValue = false;
            FailValue = 0;
        }
    }
}
