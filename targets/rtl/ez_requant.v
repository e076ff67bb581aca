// ez_requant.v - requantize an int32 accumulator to the int8 fixed point
// (the fpga-int8 datapath, edgezo/targets/numerics.py step 5):
//
//   y = clamp(round_half_even(acc * m / 2^shift), -128, 127), then max(y, 0) if relu
//
// acc * m (m < 2^32 unsigned, |acc| < 2^31: |product| < 2^63) is formed by
// serial shift-add, one bit of m per cycle, stopping when the remaining bits
// of m are zero (31 cycles for m in [2^30, 2^31)). shift = 0 leaves the
// product unshifted; shift >= 63 gives 0 (as rounding_right_shift does).
// Round half to even: with t = p >>> (shift-1), the round bit is t[0], the
// quotient floor(p / 2^shift) is t >>> 1, and the sticky bit ORs the bits of
// p below shift-1.
module ez_requant (
    input  wire               clk,
    input  wire               rst,
    input  wire               start,
    input  wire signed [31:0] acc,
    input  wire        [31:0] m,
    input  wire        [7:0]  shift,
    input  wire               relu,
    output wire               busy,
    output reg  signed [7:0]  y
);
    reg               running;
    reg signed [63:0] a;
    reg        [31:0] b;
    reg signed [63:0] p;
    reg        [7:0]  sh;
    reg               rl;

    assign busy = running;

    wire signed [63:0] t      = p >>> (sh - 8'd1);
    wire        [63:0] below  = (64'd1 << (sh - 8'd1)) - 64'd1;
    wire               sticky = |(p & below);
    wire signed [63:0] q      = t >>> 1;
    wire               up     = t[0] & (sticky | q[0]);
    wire signed [63:0] r      = (sh == 8'd0) ? p : (sh >= 8'd63) ? 64'sd0 : q + {63'd0, up};
    wire signed [7:0]  sat    = (r > 64'sd127) ? 8'sd127 : (r < -64'sd128) ? -8'sd128 : r[7:0];

    always @(posedge clk) begin
        if (rst) begin
            running <= 1'b0;
            y <= 8'sd0;
        end else if (!running) begin
            if (start) begin
                a <= {{32{acc[31]}}, acc};
                b <= m;
                p <= 64'sd0;
                sh <= shift;
                rl <= relu;
                running <= 1'b1;
            end
        end else if (b != 32'd0) begin
            if (b[0])
                p <= p + a;
            a <= a <<< 1;
            b <= b >> 1;
        end else begin
            y <= (rl && sat[7]) ? 8'sd0 : sat;
            running <= 1'b0;
        end
    end
endmodule
