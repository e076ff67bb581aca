// ez_hash.v - lowbias32 (docs/directions.md section 3), one shift-add step per cycle.
//
//   H(x): x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16
//
// The two products are the low 32 bits of x * C, formed serially (add x << k
// when bit k of C is set), so the unit is one 32-bit adder and three
// registers; a hash takes 64 + 4 cycles. Pulse `start` with `x` while !busy;
// `y` holds H(x) once `busy` falls.
module ez_hash (
    input  wire        clk,
    input  wire        rst,
    input  wire        start,
    input  wire [31:0] x,
    output wire        busy,
    output reg  [31:0] y
);
    localparam [31:0] C1 = 32'h7FEB352D;
    localparam [31:0] C2 = 32'h846CA68B;
    localparam [2:0] IDLE = 3'd0, MUL1 = 3'd1, MUL2 = 3'd2, FIN = 3'd3;

    reg [2:0]  state;
    reg [31:0] a;      // multiplicand, shifted left each step
    reg [31:0] b;      // constant, shifted right each step
    reg [31:0] acc;    // running product
    reg [5:0]  k;      // step within a product

    assign busy = (state != IDLE);

    wire [31:0] sum = acc + (b[0] ? a : 32'd0);

    always @(posedge clk) begin
        if (rst) begin
            state <= IDLE;
            y <= 32'd0;
        end else begin
            case (state)
            IDLE: if (start) begin
                a <= x ^ (x >> 16);
                b <= C1;
                acc <= 32'd0;
                k <= 6'd0;
                state <= MUL1;
            end
            MUL1: begin
                acc <= sum;
                a <= a << 1;
                b <= b >> 1;
                k <= k + 6'd1;
                if (k == 6'd31) begin
                    a <= sum ^ (sum >> 15);
                    b <= C2;
                    acc <= 32'd0;
                    k <= 6'd0;
                    state <= MUL2;
                end
            end
            MUL2: begin
                acc <= sum;
                a <= a << 1;
                b <= b >> 1;
                k <= k + 6'd1;
                if (k == 6'd31) begin
                    acc <= sum;
                    state <= FIN;
                end
            end
            default: begin
                y <= acc ^ (acc >> 16);
                state <= IDLE;
            end
            endcase
        end
    end
endmodule
